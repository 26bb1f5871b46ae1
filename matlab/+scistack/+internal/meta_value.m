function v = meta_value(name, v)
%META_VALUE A metadata value (an address or version key value) as it is written to JSON:
%   whole-number doubles (|v| <= 2^53) become int64 (JSON integers, so 'subject', 1 is the
%   same address as Python's subject=1), other doubles stay floats; integer classes,
%   logical scalars and char rows pass unchanged; anything else is scistack:badArgument.
if ischar(v) && (isempty(v) || size(v, 1) == 1)
    return
end
if islogical(v) && isscalar(v)
    return
end
if isnumeric(v) && isscalar(v) && isreal(v)
    if isinteger(v)
        return
    end
    d = double(v);
    if isfinite(d) && d == round(d) && abs(d) <= 9007199254740992
        v = int64(d);
    else
        v = d;
    end
    return
end
error('scistack:badArgument', ['metadata "%s" must be a number, a logical or a char row ', ...
    '(got a %s %s)'], name, mat2str(size(v)), class(v));
end
