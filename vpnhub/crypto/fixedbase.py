"""Fixed-base comb exponentiation: g^x for a MODP group's own key pairs.

Our half of every MODP exchange is g^x with the same g (2) and p, only x
changes (RFC 2409 section 5). Powers of g that do not depend on x can thus be
computed once per group, and g^x becomes a product of table entries: the
fixed-base comb method of Lim and Lee (Handbook of Applied Cryptography,
algorithm 14.117). With ROWS = h = 8 and the exponent's t bits written as 8
rows of a = ceil(t/8) bits, column c's 8 bits form an index I_c, and

    g^x = prod_c G[I_c]^(2^c),  G[I] = prod_{k: bit k of I} g^(2^(k*a)).

The a columns are cut into v runs of b = ceil(a/v); table j holds G[I]^(2^(j*b)),
so one Horner pass over b positions needs b-1 squarings and at most a
multiplications mod p, against t squarings and about t/5 multiplications for
a sliding-window powmod. Group 14 (t = 320, v = 4): 9 squarings and <= 40
multiplications instead of ~380 operations; about 4x faster with gmpy2 and
5x with pow() (bench/dh_cost.py). The tables (v * 256 values mod p) are
capped by TABLE_BYTES: 256 KiB of values for group 14 (v = 4), between 96
and 256 KiB for the other MODP groups (`tables_for`); with the objects' headers
~0.3 MiB for group 14. Built in ~2 ms with gmpy2, ~20 ms with pow().

Side channels, honestly: the table lookups are indexed by bits of the secret
exponent and zero columns are skipped, so neither memory access pattern nor
timing is constant. Neither is what this replaces: gmpy2's powmod (GMP's
mpz_powm, a sliding window over the exponent's bits with data-dependent table
lookups; only mpz_powm_sec is constant-time) and Python's pow(). The
concentrator's DH runs on shared cores like before; nothing here changes that
position.

Threads: a table is built lazily at the first exponentiation of its group
and backend (a few ms with gmpy2) and never changes afterwards. Two threads
(the IKE loop and the DH worker, net.dhworker) may both build it at once; each
builds its own and the last assignment wins: duplicate work once, never a
partial table. With gmpy2, every multiplication and reduction lets go of the
GIL when the thread's context allows it (crypto.dh.release_gil_in_this_thread),
as the single powmod did.
"""

from __future__ import annotations

from collections.abc import Callable

#: Bits per table index: 8 rows, so the column indices are the bytes of one int.
ROWS = 8
#: Bytes of table values a group may take: v = TABLE_BYTES // (256 * prime bytes),
#: at most MAX_TABLES (beyond 4 the squarings saved no longer pay for the memory).
TABLE_BYTES = 256 * 1024
MAX_TABLES = 4

#: Number type of a backend: int, or gmpy2's mpz (which computes like one, faster).
ToNumber = Callable[[int], int]


def tables_for(modulus_bytes: int) -> int:
    """v: how many tables of 256 values fit TABLE_BYTES (1 .. MAX_TABLES)."""
    return max(1, min(MAX_TABLES, TABLE_BYTES // ((1 << ROWS) * modulus_bytes)))


class FixedBaseComb:
    """g^x mod p for any 0 <= x < 2^(ROWS * columns), from precomputed tables."""

    __slots__ = ("_columns", "_fmt", "_mask", "_modulus", "_one", "_run", "_tables",
                 "exponent_bits", "table_values")

    def __init__(self, base: int, modulus: int, exponent_bits: int,
                 to_number: ToNumber = int, tables: int | None = None) -> None:
        if exponent_bits < 1 or not 1 < base < modulus:
            raise ValueError("fixed-base comb: bad base, modulus or exponent size")
        columns = -(-exponent_bits // ROWS)  # a
        if tables is None:
            tables = tables_for((modulus.bit_length() + 7) // 8)
        v = max(1, min(columns, tables))
        self._columns = columns
        self._run = -(-columns // v)  # b: columns per table
        self.exponent_bits = ROWS * columns  # the largest exponent it takes, in bits
        self._mask = (1 << columns) - 1
        self._fmt = f"0{columns}b"
        self._modulus = to_number(modulus)
        self._one = to_number(1)
        self._tables = self._build(to_number(base), v)
        self.table_values = v << ROWS

    def _build(self, base: int, count: int) -> tuple[list[int], ...]:
        """Table j, index I: prod over the set bits k of I of g^(2^(k*a + j*b))."""
        p, a, b = self._modulus, self._columns, self._run
        wanted = {k * a + j * b for k in range(ROWS) for j in range(count)}
        powers: dict[int, int] = {}
        square = base  # g^(2^n) for n = 0, 1, ...: one squaring per bit position
        for n in range(max(wanted) + 1):
            if n:
                square = square * square % p
            if n in wanted:
                powers[n] = square
        tables = []
        for j in range(count):
            row_powers = [powers[k * a + j * b] for k in range(ROWS)]
            table = [self._one] * (1 << ROWS)
            for index in range(1, 1 << ROWS):
                low = index & -index  # G[I] = G[I without its lowest bit] * that bit's power
                power = row_powers[low.bit_length() - 1]
                table[index] = power if index == low else table[index ^ low] * power % p
            tables.append(table)
        return tuple(tables)

    def _indices(self, x: int) -> bytes:
        """Byte c = column c's index I_c, padded with zero columns to v*b bytes.

        The bit transpose is done by the interpreter's C code: each row as a
        binary string (row 7 first), zip() reads them column by column from the
        top, and the concatenated 8-bit groups are the indices, top column first."""
        rows = [format((x >> (k * self._columns)) & self._mask, self._fmt)
                for k in range(ROWS - 1, -1, -1)]
        columns = "".join(map("".join, zip(*rows, strict=True)))
        return int(columns, 2).to_bytes(len(self._tables) * self._run, "little")

    def power(self, x: int) -> int:
        """g^x mod p (an int, or the backend's number); ValueError if x is too large."""
        if not 0 <= x < 1 << self.exponent_bits:
            raise ValueError("fixed-base comb: exponent out of range")
        p, tables, b = self._modulus, self._tables, self._run
        indices = self._indices(x)
        acc = self._one
        for s in range(b - 1, -1, -1):  # Horner over the b positions of each run
            acc = acc * acc % p
            for table, index in zip(tables, indices[s::b], strict=True):
                if index:  # a zero column contributes 1
                    acc = acc * table[index] % p
        return acc

