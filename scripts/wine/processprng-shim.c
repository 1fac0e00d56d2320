/* bcryptprimitives.dll shim for Wine 8.0 (Debian 12), which lacks this DLL: Rust's std
 * imports ProcessPrng from it, so without the shim no Rust program starts under Wine.
 * Built with mingw by scripts/wine/setup.sh and copied into the prefix's system32.
 * Test tooling only; never shipped. */
#include <windows.h>
#include <bcrypt.h>

__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x40000000 ? 0x40000000 : (ULONG)len;
        if (BCryptGenRandom(NULL, data, chunk, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
