-- The blobs of images/ (a pack, by its id; an image stored on its own, by the image's id) whose every image the
-- catalog has recorded: reconcile, before every backup, compares the repository's listing with these rows instead of
-- with every image id (a pool's history: hundreds of thousands). Written with the records, in their transaction;
-- forgotten for the blobs of images a prune forgets.
CREATE TABLE "RecordedImageBlob" (
  "id" TEXT NOT NULL,
  CONSTRAINT "RecordedImageBlob_pkey" PRIMARY KEY ("id")
);
