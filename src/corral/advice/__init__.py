"""What corral tells a user about their host: which isolation level to pick (``rules``) and
what each installed driver finds missing (``doctor``)."""
