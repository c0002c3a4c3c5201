-- Tamper-evident audit log: events form one hash chain. Each carries its place in the chain (seq: 1, 2, ...),
-- the hash of the event before it (prevHash; 64 zeros for the first) and its own hash:
--   hash = hex(sha256(utf8(prevHash || canonical))), canonical = the jsonb text of
--   [id, at as 'YYYY-MM-DDTHH:MI:SS.mmm', actor, action, target, detail]
-- (jsonb's text form is canonical: keys sorted, one spacing). The database computes them in a trigger, so no
-- application code can skip or choose them; `vmdedup audit verify` recomputes every hash and link.
-- The defaults below never survive an insert (the trigger overwrites them); they exist for Prisma's client.

ALTER TABLE "AuditEvent"
    ADD COLUMN "seq" BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN "prevHash" TEXT NOT NULL DEFAULT '',
    ADD COLUMN "hash" TEXT NOT NULL DEFAULT '';

-- search_path is pinned: a session's own search_path cannot put look-alike functions or tables in front.
CREATE FUNCTION "audit_event_hash"("prevHash" TEXT, "id" BIGINT, "at" TIMESTAMP(3), "actor" TEXT, "action" TEXT, "target" TEXT, "detail" JSONB)
    RETURNS TEXT LANGUAGE sql STABLE SET search_path = pg_catalog AS $$
    SELECT encode(sha256(convert_to("prevHash" || jsonb_build_array("id", to_char("at", 'YYYY-MM-DD"T"HH24:MI:SS.MS'), "actor", "action", "target", "detail")::text, 'UTF8')), 'hex')
$$;

-- Existing events are chained in id order (the append-only trigger is set aside for this one rewrite).
ALTER TABLE "AuditEvent" DISABLE TRIGGER "AuditEvent_append_only";
DO $$
DECLARE
    event RECORD;
    n BIGINT := 0;
    previous TEXT := repeat('0', 64);
BEGIN
    FOR event IN SELECT "id", "at", "actor", "action", "target", "detail" FROM "AuditEvent" ORDER BY "id" LOOP
        n := n + 1;
        UPDATE "AuditEvent"
            SET "seq" = n, "prevHash" = previous,
                "hash" = "audit_event_hash"(previous, event."id", event."at", event."actor", event."action", event."target", event."detail")
            WHERE "id" = event."id"
            RETURNING "hash" INTO previous;
    END LOOP;
END $$;
ALTER TABLE "AuditEvent" ENABLE TRIGGER "AuditEvent_append_only";

CREATE UNIQUE INDEX "AuditEvent_seq_key" ON "AuditEvent"("seq");

-- One linear chain under concurrent writers: each insert takes the chain's lock (held until its transaction
-- ends), then reads the end of the chain, which a READ COMMITTED statement sees as of after the lock. A
-- REPEATABLE READ transaction could see an older end: the unique seq then refuses its insert (no fork).
CREATE FUNCTION "audit_event_chain"() RETURNS trigger LANGUAGE plpgsql SET search_path = pg_catalog AS $$
DECLARE
    last RECORD;
BEGIN
    PERFORM pg_advisory_xact_lock(1986880609); -- 0x766d6461, "vmda": the audit chain
    SELECT "seq", "hash" INTO last FROM public."AuditEvent" ORDER BY "seq" DESC LIMIT 1;
    NEW."seq" := coalesce(last."seq", 0) + 1;
    NEW."prevHash" := coalesce(last."hash", repeat('0', 64));
    NEW."hash" := public."audit_event_hash"(NEW."prevHash", NEW."id", NEW."at", NEW."actor", NEW."action", NEW."target", NEW."detail");
    RETURN NEW;
END;
$$;

CREATE TRIGGER "AuditEvent_chain" BEFORE INSERT ON "AuditEvent"
    FOR EACH ROW EXECUTE FUNCTION "audit_event_chain"();
