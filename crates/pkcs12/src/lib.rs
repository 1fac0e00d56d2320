//! PKCS#12 (PFX) decoding and encoding shared by the agent and the emulator.
