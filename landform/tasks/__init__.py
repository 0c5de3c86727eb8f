"""The paper's applications, one folder each: images (§4.1), pose (§4.2), defense (§4.3)."""
