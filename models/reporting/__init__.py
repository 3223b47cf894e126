"""What people read: figures, the HTML report, the run report's sections and column descriptions."""
