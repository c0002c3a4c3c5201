-- Whether the repository the catalog indexes is encrypted: once it is, a config.json that says plain is refused (an
-- altered config would otherwise make the next backups write in the clear).
ALTER TABLE "CatalogRepository" ADD COLUMN "encrypted" BOOLEAN NOT NULL DEFAULT false;
