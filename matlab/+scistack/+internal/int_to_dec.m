function s = int_to_dec(x)
%INT_TO_DEC Exact decimal text of an integer-class scalar. sprintf and Octave's 64-bit
%   integer division are not exact near 2^64, so the magnitude is split into two 32-bit
%   halves held in doubles and divided by 10 digit by digit.
if x == 0
    s = '0';
    return
end
neg = x < 0;
if isa(x, 'int64')
    if x == intmin('int64')
        s = '-9223372036854775808';
        return
    end
    m = uint64(abs(x));
elseif isa(x, 'uint64')
    m = x;
else
    m = uint64(abs(double(x)));
end
hi = double(bitshift(m, -32));
lo = double(bitand(m, uint64(4294967295)));
digits = zeros(1, 20);
k = 0;
while hi > 0 || lo > 0
    r = mod(hi, 10);
    hi = (hi - r) / 10;
    t = r * 4294967296 + lo;
    d = mod(t, 10);
    lo = (t - d) / 10;
    k = k + 1;
    digits(k) = d;
end
s = char('0' + digits(k:-1:1));
if neg
    s = ['-', s];
end
end
