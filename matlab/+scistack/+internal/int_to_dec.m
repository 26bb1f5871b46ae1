function s = int_to_dec(x)
%INT_TO_DEC Exact decimal text of an integer-class scalar (sprintf loses 64-bit precision).
if x == 0
    s = '0';
    return
end
neg = x < 0;
if isa(x, 'uint64')
    m = x;
elseif isa(x, 'int64')
    if x == intmin('int64')
        s = '-9223372036854775808';
        return
    end
    m = uint64(abs(x));
else
    m = uint64(abs(double(x)));
end
digits = zeros(1, 20);
k = 0;
ten = uint64(10);
while m > 0
    q = idivide(m, ten, 'floor');
    k = k + 1;
    digits(k) = double(m - q * ten);
    m = q;
end
s = char('0' + digits(k:-1:1));
if neg
    s = ['-', s];
end
end
