function bytes = utf8_encode(cp)
%UTF8_ENCODE UTF-8 bytes (uint8 row) of code points.
cp = double(cp(:)');
if all(cp < 128)
    bytes = uint8(cp);
    return
end
n = numel(cp);
B = zeros(4, n);
use = false(4, n);
one = cp < 128;
two = cp >= 128 & cp < 2048;
three = cp >= 2048 & cp < 65536;
four = cp >= 65536;
B(1, one) = cp(one);
use(1, one) = true;
B(1, two) = 192 + floor(cp(two) / 64);
B(2, two) = 128 + mod(cp(two), 64);
use(1:2, two) = true;
B(1, three) = 224 + floor(cp(three) / 4096);
B(2, three) = 128 + mod(floor(cp(three) / 64), 64);
B(3, three) = 128 + mod(cp(three), 64);
use(1:3, three) = true;
B(1, four) = 240 + floor(cp(four) / 262144);
B(2, four) = 128 + mod(floor(cp(four) / 4096), 64);
B(3, four) = 128 + mod(floor(cp(four) / 64), 64);
B(4, four) = 128 + mod(cp(four), 64);
use(:, four) = true;
bytes = uint8(B(use)');
end
