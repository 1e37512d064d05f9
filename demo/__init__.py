"""The demo data set, and the product tables for demo and benchmark databases."""
