//! Azure Key Vault + managed-identity emulator.
