function v = dec_to_int(s)
%DEC_TO_INT Value of a JSON integer literal: a double when it is exactly representable
%   (|v| <= 2^53), else int64 or uint64 when it fits (exactly: built from two 32-bit
%   halves), else the nearest double with a scistack:bigInt warning.
d = str2double(s);
if abs(d) < 9007199254740992
    v = d;
    return
end
neg = s(1) == '-';
digits = s(1 + neg:end);
digits = digits(find(digits ~= '0', 1):end);
if neg
    limit = '9223372036854775808';
else
    limit = '18446744073709551615';
end
if numel(digits) > numel(limit) || (numel(digits) == numel(limit) && ...
        compare(digits, limit) > 0)
    warning('scistack:bigInt', ['integer %s does not fit in 64 bits; it is returned as ', ...
        'the nearest double'], s);
    v = d;
    return
end
hi = 0;
lo = 0;
for c = double(digits) - 48
    lo = lo * 10 + c;
    carry = floor(lo / 4294967296);
    lo = lo - carry * 4294967296;
    hi = hi * 10 + carry;
end
m = bitor(bitshift(uint64(hi), 32), uint64(lo));
if hi < 2097152 || (hi == 2097152 && lo == 0)   % |v| <= 2^53: exact as a double
    v = d;
elseif neg
    if strcmp(digits, limit)
        v = intmin('int64');
    else
        v = -int64(m);
    end
elseif numel(digits) < 19 || (numel(digits) == 19 && compare(digits, '9223372036854775807') <= 0)
    v = int64(m);
else
    v = m;
end
end

function c = compare(a, b)
% Compare two digit strings of equal length: -1, 0 or 1.
k = find(a ~= b, 1);
if isempty(k)
    c = 0;
else
    c = sign(double(a(k)) - double(b(k)));
end
end
