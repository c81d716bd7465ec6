"""The facegate server: settings, sessions, gallery and matcher, gRPC servicer, CLI.

Importing this package loads nothing heavy; models load in :func:`facegate.server.app.build`.
"""
