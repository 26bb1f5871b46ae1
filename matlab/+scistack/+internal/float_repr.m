function s = float_repr(x)
%FLOAT_REPR Python's repr() of a finite double: the shortest text that reads back as the
%   same double, always with '.' or an exponent: 1.0, -0.0, 0.1, 1e+16, 1e-05, 1.5e+300.
%   Fixed notation when the decimal exponent E is -4 <= E < 16, else scientific.
x = double(x);
if x == 0
    if 1 / x < 0
        s = '-0.0';
    else
        s = '0.0';
    end
    return
end
a = abs(x);
% Round-tripping is monotone in the number of digits, and most doubles need 16 or 17:
% try 15 first, then search 1..15 only when 15 digits are enough.
[digits, e] = try_digits(a, 15);
if isempty(digits)
    [digits, e] = try_digits(a, 16);
    if isempty(digits)
        [digits, e] = try_digits(a, 17);
    end
else
    for p = 1:14
        [d, ep] = try_digits(a, p);
        if ~isempty(d)
            digits = d;
            e = ep;
            break
        end
    end
end
digits = regexprep(digits, '0+$', '');
if isempty(digits)
    digits = '0';
end
n = numel(digits);
if e >= -4 && e < 16
    if e >= 0
        if n <= e + 1
            s = [digits, repmat('0', 1, e + 1 - n), '.0'];
        else
            s = [digits(1:e + 1), '.', digits(e + 2:end)];
        end
    else
        s = ['0.', repmat('0', 1, -e - 1), digits];
    end
else
    m = digits(1);
    if n > 1
        m = [m, '.', digits(2:end)];
    end
    if e < 0
        sgn = '-';
    else
        sgn = '+';
    end
    s = sprintf('%se%s%02d', m, sgn, abs(e));
end
if x < 0
    s = ['-', s];
end
end

function [digits, e] = try_digits(a, p)
% The p significant digits (and decimal exponent) of the p-digit decimal that reads back as
% A, or '' when none does: the nearest one, or the next one up (the rounding interval above
% a power of two is twice as wide as the one below).
digits = '';
t = sprintf(sprintf('%%.%de', p - 1), a);
epos = find(t == 'e', 1);
mant = t([1, 3:epos - 1]);
e = str2double(t(epos + 1:end));
v = str2double(t);
if v == a
    digits = mant;
elseif v < a
    [up, carry] = increment(mant);
    e2 = e;
    if carry
        up = ['1', up];
        e2 = e + 1;
    end
    if str2double(sprintf('%se%d', up, e2 - numel(up) + 1)) == a
        digits = up;
        e = e2;
    end
end
end

function [d, carry] = increment(d)
k = numel(d);
carry = true;
while carry && k >= 1
    if d(k) == '9'
        d(k) = '0';
        k = k - 1;
    else
        d(k) = d(k) + 1;
        carry = false;
    end
end
end
