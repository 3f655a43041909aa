"""Every entry point behind one ``tally`` command (typer): up, reads, monitors, traces, loadtest."""
