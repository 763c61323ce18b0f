"""The report pipeline: every report declared once (catalogue.py), run the same way for every
delivery (delivery.py, with its chart from charts.py and its CSV from csv_rows.py), one
command-line path (bot/cli/reports.py: `devicecare report <name>`) and one Slack path
(bot/slack/reports.py).

The set-based queries stay in storage/ (storage.reports, storage.billing_reports); this package
sits in bot/ because each report's declaration names its terminal and Slack renderings.
"""
