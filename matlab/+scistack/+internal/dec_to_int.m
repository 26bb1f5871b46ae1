function v = dec_to_int(s)
%DEC_TO_INT Value of a JSON integer literal: a double when it is exactly representable
%   (|v| <= 2^53), else int64 or uint64 when it fits, else the nearest double with a warning.
d = str2double(s);
if abs(d) < 9007199254740992
    v = d;
    return
end
neg = s(1) == '-';
digits = double(s(1 + neg:end)) - 48;
m = uint64(0);
limit = intmax('uint64');
ten = uint64(10);
for k = 1:numel(digits)
    dk = uint64(digits(k));
    if m > idivide(limit - dk, ten, 'floor')
        warning('scistack:bigInt', ['integer %s does not fit in 64 bits; ', ...
            'it is returned as the nearest double'], s);
        v = d;
        return
    end
    m = m * ten + dk;
end
if m <= uint64(9007199254740992)
    v = d;
elseif neg
    if m == uint64(9223372036854775808)
        v = intmin('int64');
    elseif m < uint64(9223372036854775808)
        v = -int64(m);
    else
        warning('scistack:bigInt', ['integer %s does not fit in 64 bits; ', ...
            'it is returned as the nearest double'], s);
        v = d;
    end
elseif m <= uint64(intmax('int64'))
    v = int64(m);
else
    v = m;
end
end
