-- Users and their orders. Times are Unix microseconds (UTC). Money is an
-- integer number of the currency's minor units (cents).
CREATE TABLE users (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	email TEXT NOT NULL,
	name TEXT NOT NULL,
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX users_email ON users (email);

CREATE TABLE orders (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE RESTRICT,
	status TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled')),
	amount_cents INTEGER NOT NULL CHECK (amount_cents >= 0),
	currency TEXT NOT NULL,
	note TEXT NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	updated_at INTEGER NOT NULL,
	confirmed_at INTEGER
);
CREATE INDEX orders_user ON orders (user_id, id);
CREATE INDEX orders_created ON orders (created_at);
