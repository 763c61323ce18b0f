"""The report pipeline: every report declared once (catalogue.py), one command-line path
(cli.py: `devicecare report <name>`) and one Slack path (bot/slack/reports.py).

The set-based queries stay in storage/ (storage.reports, storage.billing_reports); this package
sits in bot/ because each report's declaration names its terminal and Slack renderings.
"""
