function value = decode_json(payload, ref_fn)
%DECODE_JSON The MATLAB value of a canonical JSON payload (docs/format.md section 1.2).
%   VALUE = scistack.decode_json(PAYLOAD) takes the payload bytes (uint8) or text (char).
%   VALUE = scistack.decode_json(PAYLOAD, REF_FN) calls REF_FN(oid) for each {"$ref": oid}
%   (scistack.read_object passes a function that reads the child object); without it a
%   reference decodes to its oid text.
%
%   Mapping: null -> []; true/false -> logical; integer -> double when |v| <= 2^53, else
%   int64/uint64; float -> double; string -> char row; list and tuple -> 1xN cell row ({}
%   when empty); object -> struct, or containers.Map when a key is not a valid MATLAB name;
%   {"$float": ...} -> NaN/Inf/-Inf; {"$complex": ...} -> complex double; {"$bytes": ...}
%   -> uint8 column; {"$np": [descr, v]} -> a scalar of the matching class (f2 and f4 ->
%   single, M8/m8 -> int64 count, U and S -> char); {"$dict": pairs} -> struct or Map.
if nargin < 2
    ref_fn = [];
end
if isnumeric(payload)
    payload = scistack.internal.bytes_to_text(payload);
end
value = scistack.internal.json_parse(payload, ref_fn);
end
