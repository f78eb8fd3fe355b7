"""Protocol-buffer message classes for AutoDL data, declared here without TensorFlow.

`SequenceExample` (records) and `DataSpecification` (metadata.textproto) use the field
numbers of TensorFlow's feature/example protos and of the AutoDL data proto, so bytes and
text written here parse there and the other way round. Building them from descriptors keeps
reading and writing free of the TensorFlow import (2-3 s) and runs on protobuf's C core.
"""
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_REPEATED = _F.LABEL_REPEATED
_PACKAGE = "autodl_proto"


def _add_field(msg, name, number, ftype, *, repeated=False, type_name=None, packed=None,
               default=None):
    field = msg.field.add(name=name, number=number, type=ftype,
                          label=_REPEATED if repeated else _F.LABEL_OPTIONAL)
    if type_name:
        field.type_name = f".{_PACKAGE}.{type_name}"
    if packed is not None:
        field.options.packed = packed
    if default is not None:
        field.default_value = default
    return field


def _add_map(msg, name, number, value_type, value_type_name=None):
    """map<string, V>: a repeated nested `<Name>Entry` message flagged as a map entry."""
    entry_name = "".join(part.capitalize() for part in name.split("_")) + "Entry"
    entry = msg.nested_type.add(name=entry_name)
    entry.options.map_entry = True
    _add_field(entry, "key", 1, _F.TYPE_STRING)
    _add_field(entry, "value", 2, value_type, type_name=value_type_name)
    _add_field(msg, name, number, _F.TYPE_MESSAGE, repeated=True,
               type_name=f"{msg.name}.{entry_name}")


def _example_file():
    fd = descriptor_pb2.FileDescriptorProto(name="autodl_example.proto", package=_PACKAGE,
                                            syntax="proto3")
    for name, ftype in (("BytesList", _F.TYPE_BYTES), ("FloatList", _F.TYPE_FLOAT),
                        ("Int64List", _F.TYPE_INT64)):
        packed = None if ftype == _F.TYPE_BYTES else True
        _add_field(fd.message_type.add(name=name), "value", 1, ftype, repeated=True,
                   packed=packed)
    feature = fd.message_type.add(name="Feature")
    feature.oneof_decl.add(name="kind")
    for number, (fname, tname) in enumerate((("bytes_list", "BytesList"),
                                             ("float_list", "FloatList"),
                                             ("int64_list", "Int64List")), start=1):
        _add_field(feature, fname, number, _F.TYPE_MESSAGE, type_name=tname).oneof_index = 0
    _add_map(fd.message_type.add(name="Features"), "feature", 1, _F.TYPE_MESSAGE, "Feature")
    _add_field(fd.message_type.add(name="FeatureList"), "feature", 1, _F.TYPE_MESSAGE,
               repeated=True, type_name="Feature")
    _add_map(fd.message_type.add(name="FeatureLists"), "feature_list", 1, _F.TYPE_MESSAGE,
             "FeatureList")
    seq = fd.message_type.add(name="SequenceExample")
    _add_field(seq, "context", 1, _F.TYPE_MESSAGE, type_name="Features")
    _add_field(seq, "feature_lists", 2, _F.TYPE_MESSAGE, type_name="FeatureLists")
    return fd


def _metadata_file():
    # proto2, so that fields set to their default (is_sequence: false, format: DENSE) are
    # still written out, and field numbers give the protocol's line order.
    fd = descriptor_pb2.FileDescriptorProto(name="autodl_data.proto", package=_PACKAGE,
                                            syntax="proto2")
    spec = fd.message_type.add(name="MatrixSpec")
    fmt = spec.enum_type.add(name="Format")
    for number, value in enumerate(("DENSE", "SPARSE", "COMPRESSED")):
        fmt.value.add(name=value, number=number)
    _add_field(spec, "col_count", 1, _F.TYPE_INT32)
    _add_field(spec, "row_count", 2, _F.TYPE_INT32)
    _add_field(spec, "is_sequence_col", 3, _F.TYPE_BOOL)
    _add_field(spec, "is_sequence_row", 4, _F.TYPE_BOOL)
    _add_field(spec, "has_locality_col", 5, _F.TYPE_BOOL)
    _add_field(spec, "has_locality_row", 6, _F.TYPE_BOOL)
    _add_field(spec, "format", 7, _F.TYPE_ENUM, type_name="MatrixSpec.Format", default="DENSE")
    _add_field(spec, "num_channels", 8, _F.TYPE_INT32, default="-1")
    data = fd.message_type.add(name="DataSpecification")
    _add_field(data, "is_sequence", 1, _F.TYPE_BOOL)
    _add_field(data, "sample_count", 2, _F.TYPE_INT32)
    _add_field(data, "sequence_size", 3, _F.TYPE_INT32)
    _add_field(data, "output_dim", 4, _F.TYPE_INT32)
    _add_field(data, "matrix_spec", 5, _F.TYPE_MESSAGE, repeated=True, type_name="MatrixSpec")
    _add_map(data, "label_to_index_map", 6, _F.TYPE_INT32)
    return fd


_pool = descriptor_pool.DescriptorPool()
for _file in (_example_file(), _metadata_file()):
    _pool.Add(_file)


def _message(name):
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName(f"{_PACKAGE}.{name}"))


SequenceExample = _message("SequenceExample")
Feature = _message("Feature")
DataSpecification = _message("DataSpecification")
MatrixSpec = _message("MatrixSpec")
