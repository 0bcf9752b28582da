"""Orchestrator-neutral core shared by the Airflow and Prefect adapters. Imports neither."""
