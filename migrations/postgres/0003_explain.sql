-- Why an incident fired and what its entity did (the contract's "explain", as JSON), and
-- the ids of incidents of the same actor in the same episode (a JSON array). Rows stored
-- before this migration have neither: '{}' and '[]'.
ALTER TABLE incidents ADD COLUMN explain TEXT NOT NULL DEFAULT '{}';
ALTER TABLE incidents ADD COLUMN related TEXT NOT NULL DEFAULT '[]';
