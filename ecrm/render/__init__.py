"""Stage 4, content: sandboxed Jinja2 templates per locale, compiled once, and pre-encoded
MIME skeletons that turn a render into wire-ready email bytes in microseconds."""
