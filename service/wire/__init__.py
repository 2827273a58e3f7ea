"""Wire types: what travels between the server, its clients and the sweep drivers."""
