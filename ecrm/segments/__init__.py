"""Stage 2, who gets it: audience rules compiled to one SQL query and streamed in batches."""
