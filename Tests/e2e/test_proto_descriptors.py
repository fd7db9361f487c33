"""Our copy of the OTLP .proto files (proto/) must describe the same messages as
the opentelemetry-proto package the SDK encodes with, field for field, and the
C code committed in Sources/COTLP must be what protoc-c makes of them today."""

from __future__ import annotations

import filecmp
import importlib
import shutil
import subprocess
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool

from conftest import REPO_ROOT

PROTO_DIR = REPO_ROOT / "proto"

UPSTREAM_MODULES = [
    "opentelemetry.proto.common.v1.common_pb2",
    "opentelemetry.proto.resource.v1.resource_pb2",
    "opentelemetry.proto.logs.v1.logs_pb2",
    "opentelemetry.proto.trace.v1.trace_pb2",
    "opentelemetry.proto.metrics.v1.metrics_pb2",
    "opentelemetry.proto.collector.logs.v1.logs_service_pb2",
    "opentelemetry.proto.collector.trace.v1.trace_service_pb2",
    "opentelemetry.proto.collector.metrics.v1.metrics_service_pb2",
]


def _proto_files() -> list[str]:
    return sorted(str(p.relative_to(PROTO_DIR)) for p in PROTO_DIR.rglob("*.proto"))


@pytest.fixture(scope="module")
def our_pool(tmp_path_factory) -> descriptor_pool.DescriptorPool:
    """Our protos, compiled by protoc-c's libprotoc into a FileDescriptorSet."""
    if shutil.which("protoc-c") is None:
        pytest.fail("protoc-c not found: apt-get install protobuf-c-compiler", pytrace=False)
    out = tmp_path_factory.mktemp("descriptors") / "otlp.desc"
    subprocess.run(
        ["protoc-c", f"--descriptor_set_out={out}", "--include_imports", "-I", str(PROTO_DIR), *_proto_files()],
        check=True,
        cwd=PROTO_DIR,
        capture_output=True,
    )
    descriptor_set = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    pool = descriptor_pool.DescriptorPool()
    for file_proto in descriptor_set.file:
        pool.Add(file_proto)
    return pool


def _walk_messages(descriptor):
    yield descriptor
    for nested in descriptor.nested_types:
        yield from _walk_messages(nested)


def _upstream_descriptors():
    messages, enums = [], []
    for module_name in UPSTREAM_MODULES:
        file_descriptor = importlib.import_module(module_name).DESCRIPTOR
        for message in file_descriptor.message_types_by_name.values():
            for descriptor in _walk_messages(message):
                messages.append(descriptor)
                enums.extend(descriptor.enum_types)
        enums.extend(file_descriptor.enum_types_by_name.values())
    return messages, enums


UPSTREAM_MESSAGES, UPSTREAM_ENUMS = _upstream_descriptors()


def test_upstream_package_has_what_we_compare():
    names = {d.full_name for d in UPSTREAM_MESSAGES}
    for expected in [
        "opentelemetry.proto.collector.logs.v1.ExportLogsServiceRequest",
        "opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest",
        "opentelemetry.proto.collector.metrics.v1.ExportMetricsServiceRequest",
        "opentelemetry.proto.logs.v1.LogRecord",
        "opentelemetry.proto.trace.v1.Span.Link",
        "opentelemetry.proto.metrics.v1.ExponentialHistogramDataPoint.Buckets",
        "opentelemetry.proto.common.v1.AnyValue",
    ]:
        assert expected in names


def _synthetic_oneof_name(field) -> str:
    return "_" + field.name


def _field_summary(field) -> dict:
    return {
        "name": field.name,
        "number": field.number,
        "type": field.type,
        "repeated": field.is_repeated,
        "packed": field.is_packed if field.is_repeated else None,
        "message_type": field.message_type.full_name if field.message_type else None,
        "enum_type": field.enum_type.full_name if field.enum_type else None,
        "json_name": field.json_name,
    }


@pytest.mark.parametrize("upstream", UPSTREAM_MESSAGES, ids=lambda d: d.full_name)
def test_message_matches_upstream(our_pool, upstream):
    try:
        ours = our_pool.FindMessageTypeByName(upstream.full_name)
    except KeyError:
        pytest.fail(f"proto/ has no message {upstream.full_name}", pytrace=False)

    upstream_fields = {f.number: f for f in upstream.fields}
    our_fields = {f.number: f for f in ours.fields}
    assert sorted(our_fields) == sorted(upstream_fields), (
        f"{upstream.full_name}: field numbers differ: ours {sorted(our_fields)}, upstream {sorted(upstream_fields)}"
    )
    for number, theirs in upstream_fields.items():
        mine = our_fields[number]
        assert _field_summary(mine) == _field_summary(theirs), f"{upstream.full_name} field {number}"

        # oneof membership. protoc-c cannot compile proto3 `optional`, so our
        # files spell `optional double sum = 5;` as `oneof _sum { double sum = 5; }`
        # (identical on the wire). Upstream that is a synthetic oneof with
        # the same name; accept exactly that spelling and nothing looser.
        their_oneof = theirs.containing_oneof
        my_oneof = mine.containing_oneof
        if their_oneof is None:
            assert my_oneof is None, f"{upstream.full_name}.{theirs.name} is in oneof {my_oneof.name} only in ours"
            continue
        assert my_oneof is not None, f"{upstream.full_name}.{theirs.name} lost its oneof {their_oneof.name}"
        synthetic = len(their_oneof.fields) == 1 and their_oneof.name == _synthetic_oneof_name(theirs)
        if synthetic:
            assert my_oneof.name == _synthetic_oneof_name(mine), (
                f"{upstream.full_name}.{theirs.name}: proto3 optional must be written as oneof "
                f"{_synthetic_oneof_name(theirs)}, found {my_oneof.name}"
            )
            assert [f.name for f in my_oneof.fields] == [mine.name]
            assert mine.has_presence
        else:
            assert my_oneof.name == their_oneof.name
            assert sorted(f.number for f in my_oneof.fields) == sorted(f.number for f in their_oneof.fields)

    assert [o.name for o in ours.oneofs if len(o.fields) > 1] == [o.name for o in upstream.oneofs if len(o.fields) > 1]


@pytest.mark.parametrize("upstream", UPSTREAM_ENUMS, ids=lambda d: d.full_name)
def test_enum_matches_upstream(our_pool, upstream):
    try:
        ours = our_pool.FindEnumTypeByName(upstream.full_name)
    except KeyError:
        pytest.fail(f"proto/ has no enum {upstream.full_name}", pytrace=False)
    assert [(v.name, v.number) for v in ours.values] == [(v.name, v.number) for v in upstream.values]


def test_services_match_upstream(our_pool):
    for module_name in UPSTREAM_MODULES:
        for service in importlib.import_module(module_name).DESCRIPTOR.services_by_name.values():
            ours = our_pool.FindServiceByName(service.full_name)
            assert [(m.name, m.input_type.full_name, m.output_type.full_name) for m in ours.methods] == [
                (m.name, m.input_type.full_name, m.output_type.full_name) for m in service.methods
            ]


def _compare_trees(expected: Path, actual: Path) -> list[str]:
    """Every difference between two directory trees, as readable lines."""
    problems = []
    comparison = filecmp.dircmp(expected, actual)

    def visit(cmp, prefix):
        problems.extend(f"only in {cmp.left}: {prefix}{name}" for name in cmp.left_only)
        problems.extend(f"only in regenerated output: {prefix}{name}" for name in cmp.right_only)
        for name in cmp.common_files:
            if (Path(cmp.left) / name).read_bytes() != (Path(cmp.right) / name).read_bytes():
                problems.append(f"differs: {prefix}{name}")
        problems.extend(f"file/directory mismatch: {prefix}{name}" for name in cmp.common_funny)
        for name, sub in cmp.subdirs.items():
            visit(sub, f"{prefix}{name}/")

    visit(comparison, "")
    return problems


def test_generated_c_code_is_up_to_date(tmp_path):
    """scripts/generate-proto.sh into a scratch directory reproduces the
    committed protoc-c output byte for byte."""
    out = tmp_path / "COTLP"
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "generate-proto.sh"), str(out)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode == 0, result.stderr
    committed = REPO_ROOT / "Sources" / "COTLP"
    problems = []
    for relative in ["include/opentelemetry", "include/google", "generated"]:
        assert (out / relative).is_dir(), f"generate-proto.sh wrote no {relative}"
        problems += _compare_trees(committed / relative, out / relative)
    assert not problems, "regenerate with scripts/generate-proto.sh:\n" + "\n".join(problems)
