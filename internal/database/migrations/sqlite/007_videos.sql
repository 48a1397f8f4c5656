-- Uploaded videos and the thumbnail a video.thumbnail job takes of each.
CREATE TABLE videos (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	blob_id TEXT NOT NULL REFERENCES blobs (id),
	filename TEXT NOT NULL,
	at_ms INTEGER NOT NULL,
	width INTEGER NOT NULL,
	job_id INTEGER NOT NULL DEFAULT 0,
	thumbnail_blob_id TEXT REFERENCES blobs (id) ON DELETE SET NULL,
	thumbnail_width INTEGER NOT NULL DEFAULT 0,
	thumbnail_height INTEGER NOT NULL DEFAULT 0,
	error TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	completed_at INTEGER
);
