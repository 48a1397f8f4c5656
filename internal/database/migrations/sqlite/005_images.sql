-- Uploaded images and their thumbnails, made by image.thumbnail jobs.
-- status is pending until the job has stored every variant (done) or
-- refused the upload for good (failed, with error saying why). width
-- and height are as displayed (after EXIF orientation), once known.
CREATE TABLE images (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	filename TEXT NOT NULL DEFAULT '',
	content_type TEXT NOT NULL,
	size INTEGER NOT NULL,
	blob_id TEXT REFERENCES blobs (id) ON DELETE SET NULL,
	sizes TEXT NOT NULL,
	job_id INTEGER NOT NULL,
	status TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'done', 'failed')),
	error TEXT NOT NULL DEFAULT '',
	width INTEGER,
	height INTEGER,
	created_at INTEGER NOT NULL,
	completed_at INTEGER
);
CREATE INDEX images_job ON images (job_id);
CREATE INDEX images_blob ON images (blob_id);

-- One row per requested size. A row is written, not ready, as soon as
-- its file's blob exists, so that a later attempt finds and deletes the
-- file of an attempt that died; ready once the file is complete. Sizes
-- at or above the original's longest edge share one file.
CREATE TABLE image_variants (
	image_id INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
	size INTEGER NOT NULL,
	blob_id TEXT NOT NULL REFERENCES blobs (id) ON DELETE CASCADE,
	content_type TEXT NOT NULL,
	width INTEGER NOT NULL DEFAULT 0,
	height INTEGER NOT NULL DEFAULT 0,
	bytes INTEGER NOT NULL DEFAULT 0,
	ready INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (image_id, size)
);
CREATE INDEX image_variants_blob ON image_variants (blob_id);
