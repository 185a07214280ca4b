"""The direct split of plain multipart bodies agrees with python_multipart, or declines.

``split_plain_multipart`` must give exactly what the streaming parser gives for the bodies it
accepts, and return None for every other shape so that the streaming parser decides.
"""

from __future__ import annotations

import httpx
import pytest
from python_multipart.multipart import MultipartParser, parse_options_header

from service.uploads import PlainPart, split_plain_multipart

B = b"xYz123"


def streaming_parse(body: bytes, boundary: bytes) -> list[PlainPart]:
    parts: list[PlainPart] = []
    headers: dict[bytes, bytes] = {}
    field, value, data = bytearray(), bytearray(), bytearray()

    def header_end() -> None:
        headers[bytes(field).lower()] = bytes(value)
        field.clear(), value.clear()

    def part_end() -> None:
        _, options = parse_options_header(headers[b"content-disposition"])
        filename = options.get(b"filename")
        parts.append(
            (
                options[b"name"].decode(),
                None if filename is None else filename.decode(),
                bytes(data),
            )
        )
        headers.clear(), data.clear()

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": lambda d, s, e: field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: value.extend(d[s:e]),
            "on_header_end": header_end,
            "on_part_data": lambda d, s, e: data.extend(d[s:e]),
            "on_part_end": part_end,
        },
    )
    parser.write(body)
    parser.finalize()
    return parts


def httpx_body(files: dict[str, tuple[str, bytes]], data: dict[str, str]) -> tuple[bytes, bytes]:
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    _, options = parse_options_header(request.headers["content-type"])
    return request.read(), options[b"boundary"]


def manual(*sections: bytes, end: bytes = b"--" + B + b"--\r\n") -> bytes:
    return b"".join(b"--" + B + b"\r\n" + s + b"\r\n" for s in sections) + end


TEXT = b'Content-Disposition: form-data; name="text"\r\n\r\nseven'
IMAGE = (
    b'Content-Disposition: form-data; name="image"; filename="d.png"\r\n'
    b"Content-Type: image/png\r\n\r\n\x89PNG\r\n\r\n--xYz12\r\n\x00"
)


@pytest.mark.parametrize(
    "body",
    [
        manual(TEXT),
        manual(TEXT, IMAGE),
        manual(IMAGE, TEXT, end=b"--" + B + b"--"),
        manual(b'content-disposition: form-data; name="audio"; filename=""\r\n\r\n'),
        manual(b'Content-Disposition: form-data; name="x"\r\n\r\n\r\n\r\n'),
        manual(b'CONTENT-DISPOSITION: FORM-DATA; NAME="text"; Filename="a b.txt"\r\n\r\nx'),
    ],
)
def test_plain_bodies_split_as_python_multipart_parses_them(body: bytes) -> None:
    assert split_plain_multipart(body, B) == streaming_parse(body, B)


def test_what_http_clients_send_is_plain() -> None:
    body, boundary = httpx_body(
        {"image": ("digit.png", b"\x89PNG" + bytes(range(256)) * 40)}, {"text": "sept\u00e9"}
    )
    split = split_plain_multipart(body, boundary)
    assert split is not None and split == streaming_parse(body, boundary)
    assert {name for name, _, _ in split} == {"image", "text"}


@pytest.mark.parametrize(
    "body",
    [
        b"preamble\r\n" + manual(TEXT),  # a preamble before the first delimiter
        manual(TEXT).replace(b"--" + B + b"\r\n", b"--" + B + b"  \r\n", 1),  # padding
        manual(TEXT).replace(b"form-data;", b"form-data;\r\n ", 1),  # a folded header
        manual(TEXT) + b"epilogue",  # text after the closing delimiter
        manual(TEXT, end=b""),  # no closing delimiter
        manual(b"Content-Type: text/plain\r\n\r\nseven"),  # no Content-Disposition
        manual(b'Content-Disposition: form-data; filename="a"\r\n\r\nx'),  # no name
        manual(b'Content-Disposition: form-data; name="text"'),  # no blank line after headers
        b"--" + B + b"\r\n\r\n--" + B + b"--",  # no parts
        manual(TEXT) + b"--" + B + b"--",  # two closing delimiters
        manual(b"Content-Disposition: form-data; name=text\r\n\r\nx"),  # unquoted value
        manual(b'Content-Disposition: form-data; name="a\\"b"\r\n\r\nx'),  # an escape
        manual(b"Content-Disposition: form-data; name*=UTF-8''t\r\n\r\nx"),  # RFC 2231
        manual(b'Content-Disposition: form-data; name="image"; filename="C:\\a\\d.png"\r\n\r\nx'),
    ],
)
def test_other_shapes_are_left_to_python_multipart(body: bytes) -> None:
    assert split_plain_multipart(body, B) is None
