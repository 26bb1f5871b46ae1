function [kind, bytes] = encode_value(x, put_child)
%ENCODE_VALUE The kind and payload bytes of a value to store: a numeric or logical array
%   (numel ~= 1, except the 0 x 0 double []) is an npy payload (scistack.encode_npy),
%   anything else canonical JSON (scistack.encode_json), whose inner arrays become child
%   objects through PUT_CHILD(kind, bytes) (which returns the placeholder to refer to them).
if (isnumeric(x) || islogical(x)) && numel(x) ~= 1 && ...
        ~(isa(x, 'double') && isequal(size(x), [0, 0]))
    kind = 'npy';
    bytes = scistack.encode_npy(x);
else
    kind = 'json';
    bytes = uint8(scistack.encode_json(x, put_child));
end
end
