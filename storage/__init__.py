"""The SQLite store (sqlite-utils): users, datasets, jobs and their events. Only SQLite here."""
