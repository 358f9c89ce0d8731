"""How the AEAD should seal a packet that lies in two pieces (a split
segment: its headers, then its payload in the read buffer), timed in C with
OpenSSL's EVP calls directly, interleaved rounds, medians:

  pieces   two EVP updates, each piece read where it lies (no copy)
  joined   both pieces copied into the output, one update in place there
  one      one piece of the same total length, one update, out of place

    python benchmarks/aead_seal.py [--head 52] [--data 1348] [--rounds 5]

csrc/transform/tp_aead.c joins two pieces because `joined` beats `pieces`
(the copy is cheaper than a second update: OpenSSL's work per call and the
partial block at the seam)."""
import argparse, os, statistics, subprocess, sys, tempfile

SRC = r"""
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static void seal(EVP_CIPHER_CTX *c, const unsigned char *iv, int mode, const unsigned char *h, int hl,
                 const unsigned char *d, int dl, unsigned char *out)
{
    unsigned char tag[16];
    int n, m = 0, f;
    EVP_EncryptInit_ex2(c, NULL, NULL, iv, NULL);
    EVP_EncryptUpdate(c, NULL, &n, iv, 12);                   /* aad (tunpump's is 16 bytes) */
    if (mode == 0) {                                           /* pieces */
        EVP_EncryptUpdate(c, out, &m, h, hl);
        EVP_EncryptUpdate(c, out + m, &n, d, dl);
        m += n;
    } else if (mode == 1) {                                    /* joined */
        memcpy(out, h, hl);
        memcpy(out + hl, d, dl);
        EVP_EncryptUpdate(c, out, &m, out, hl + dl);
    } else {                                                   /* one */
        EVP_EncryptUpdate(c, out, &m, d, hl + dl);
    }
    if (EVP_EncryptFinal_ex(c, out + m, &f) != 1 || m + f != hl + dl ||
        EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, 16, tag) != 1)
        abort();
}

int main(int argc, char **argv)
{
    const char *cipher = argv[1];
    int hl = atoi(argv[2]), dl = atoi(argv[3]), n = atoi(argv[4]);
    static unsigned char key[32], iv[12], h[4096], d[65536], out[70000];
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (!c || EVP_EncryptInit_ex2(c, EVP_get_cipherbyname(cipher), key, NULL, NULL) != 1)
        return 1;
    for (int k = 0; k < 3; k++) {   /* rotated per round: none always runs first */
        int mode = (k + atoi(argv[5])) % 3;
        double t = now();
        for (int i = 0; i < n; i++) {
            iv[0] = (unsigned char)i;
            seal(c, iv, mode, h, hl, d, dl, out);
        }
        printf("%d %.1f\n", mode, (now() - t) / n * 1e9);
    }
    return 0;
}
"""

p = argparse.ArgumentParser()
p.add_argument("--head", type=int, default=52)
p.add_argument("--data", type=int, default=1348)
p.add_argument("--rounds", type=int, default=5)
p.add_argument("--calls", type=int, default=500000)
a = p.parse_args()
if not (0 < a.head <= 4096 and 0 < a.data <= 65536 - a.head):
    sys.exit(f"--head {a.head} / --data {a.data}: expected 1..4096 and 1..{65536 - a.head}")
with tempfile.TemporaryDirectory() as tmp:
    src, exe = os.path.join(tmp, "seal.c"), os.path.join(tmp, "seal")
    with open(src, "w") as f:
        f.write(SRC)
    subprocess.run(["gcc", "-O2", src, "-o", exe, "-lcrypto"], check=True)
    for cipher in ("aes-256-gcm", "chacha20-poly1305"):
        runs = [[], [], []]
        for r in range(a.rounds):
            out = subprocess.run([exe, cipher, str(a.head), str(a.data), str(a.calls), str(r)], check=True,
                                 capture_output=True, text=True).stdout.splitlines()
            for line in out:
                mode, ns = line.split()
                runs[int(mode)].append(float(ns))
        med = [statistics.median(r) for r in runs]
        print(f"{cipher:18} {a.head}+{a.data} bytes: pieces {med[0]:.0f} ns, joined {med[1]:.0f} ns, "
              f"one {med[2]:.0f} ns per seal (pieces/joined {med[0] / med[1]:.2f})")
