from __future__ import annotations

import gzip
import zlib

from edge_personalizer.rewrite.encoding import GzipEncoder, decoder_for, sniff_meta_charset


def test_streaming_gzip_round_trip() -> None:
    encoder = GzipEncoder()
    data = encoder.encode(b"part one, ") + encoder.encode(b"part two") + encoder.finish()
    assert gzip.decompress(data) == b"part one, part two"


def test_decoders() -> None:
    gz = decoder_for("gzip")
    assert gz is not None and gz.decompress(gzip.compress(b"x" * 100)) == b"x" * 100
    raw_deflate = zlib.compressobj(wbits=-15)
    body = raw_deflate.compress(b"abc") + raw_deflate.flush()
    assert decoder_for("deflate") is not None
    assert decoder_for("identity") is not None and decoder_for("zstd") is None
    assert body


def test_meta_charset_is_found_only_in_the_first_kib() -> None:
    assert sniff_meta_charset(b'<meta charset="Shift_JIS">') == "shift_jis"
    assert sniff_meta_charset(b" " * 2000 + b'<meta charset="koi8-r">') is None
