"""Jobs: plain functions that receive their collaborators and return a report."""
