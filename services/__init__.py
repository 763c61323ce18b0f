"""Application services: the use cases that orchestrate a unit of work.

A service feeds the rules in `workflows` with what `storage` reads, and has `storage` write what
they decide. It holds no SQL (set-based statements are `storage` query functions) and no
delivery code (Slack, HTTP, mail and templates stay in `bot`, which calls the services).
"""
