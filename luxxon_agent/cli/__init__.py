"""The two commands: `luxxon` (operator's terminal tool) and `luxxon-agent` (fleet agent).

CLI modules only parse, call one package function and render. They import
typer and rich at module level and everything heavy inside the command body,
so `--help` stays fast. Each `luxxon-agent` command group lives in its own
module exposing `register(app)`; `agent.py` lists them.
"""
