"""The two commands: `luxxon` (operator's terminal tool) and `luxxon-agent` (fleet agent).

CLI modules parse, call package functions and render. They import only typer
at module level and everything heavy inside the command body, so `--help`
stays fast. Every app and group is built by `_common.command_group`, so both
commands render help alike. Each command group lives in its own module
exposing `register(app)`: `agent.py` lists those of `luxxon-agent`;
`luxxon.py` holds wallet, login, keys and sessions and registers
`workspaces.py`, `operators.py` and `earnings.py` (whose report is
`earnings_report.py`).
"""
