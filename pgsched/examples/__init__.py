"""Example applications; `pgsched dev` loads ``pgsched.examples.demo:app`` unless given --app."""
