"""ActivityPub vocabulary: the only place where JSON-LD shapes and camelCase keys live."""
