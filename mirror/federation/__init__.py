"""Federation logic between the HTTP layer and the database: actors, keys, inbox, follows."""
