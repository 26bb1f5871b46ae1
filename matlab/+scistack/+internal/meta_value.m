function v = meta_value(name, v)
%META_VALUE A metadata value (an address or version key value) as it is written to JSON:
%   whole-number doubles (|v| <= 2^53) become int64 (JSON integers, so 'subject', 1 is the
%   same address as Python's subject=1), other doubles stay floats; integer classes,
%   logical scalars and char rows pass unchanged; anything else is scistack:badArgument.
%   Python's rules for address values (scistack/address.py, address_problem) are applied
%   here, so a value Python would refuse is refused at the call, before anything is queued:
%   NaN and infinities, integers beyond 64 bits, text longer than 1,024 characters.
if ischar(v) && (isempty(v) || size(v, 1) == 1)
    if numel(v) > 1024 && numel(scistack.internal.char_to_cp(v)) > 1024
        refuse(name, sprintf('a char row of %d characters', ...
            numel(scistack.internal.char_to_cp(v))), ['address values are labels of at ' ...
            'most 1,024 characters: save long text as the value of a variable of its own']);
    end
    return
end
if islogical(v) && isscalar(v)
    return
end
if isnumeric(v) && isscalar(v) && isreal(v)
    if isinteger(v)
        if isa(v, 'uint64') && v > uint64(intmax('int64'))
            refuse(name, sprintf('uint64(%s)', scistack.internal.int_to_dec(v)), ['an integer beyond 64 ' ...
                'signed bits; address values are labels: use a char row for a longer number']);
        end
        return
    end
    d = double(v);
    if ~isfinite(d)
        if isnan(d)
            why = 'NaN never equals itself';
        else
            why = 'an address is JSON, which has no infinity';
        end
        refuse(name, num2str(d), ['not a finite number (' why ', so nothing saved under ' ...
            'it could be found again); use a finite number, or a char row such as ''nan''']);
    end
    if d == round(d) && abs(d) <= 9007199254740992
        v = int64(d);
    else
        v = d;
    end
    return
end
error('scistack:badArgument', ['metadata "%s" must be a number, a logical or a char row ', ...
    '(got a %s %s)'], name, mat2str(size(v)), class(v));
end

function refuse(name, shown, why)
error('scistack:badArgument', 'metadata "%s" is %s: %s', name, shown, why);
end
