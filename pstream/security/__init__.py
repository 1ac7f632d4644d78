"""Authentication and its configuration: listeners and TLS, SASL (SCRAM, PLAIN), the credential store."""
