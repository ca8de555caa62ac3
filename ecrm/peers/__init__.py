"""Local, real-protocol endpoints (an SMTP sink) shared by the demo, the benchmark and tests."""
