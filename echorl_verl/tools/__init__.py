"""Command-line tools that prepare what a run needs (`python -m echorl_verl.tools.<name>`)."""
