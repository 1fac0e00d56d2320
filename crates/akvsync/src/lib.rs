//! akvsync: keeps Azure Key Vault certificates installed and current on a machine.
