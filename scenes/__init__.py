"""Scene templates: the TOML format artists write, its pydantic schema, and the bundled templates.

Entry point: :func:`scenes.template_loading.load_template`.
"""
