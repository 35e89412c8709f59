"""`GET /v1/models`: the models a key may use."""
