"""How tokens-bot is started: the command line, HTTP, Socket Mode, the console, and the jobs cron runs."""
