"""All SQL: the only place that names the product's and the bot's columns."""
