"""histoloop: settings and the admin CLI."""
