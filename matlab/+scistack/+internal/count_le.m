function n = count_le(sorted_a, q)
%COUNT_LE For each q(k), how many elements of the sorted vector SORTED_A are <= q(k)
%   (one sort of both, no loop; ties count, as the stable sort puts SORTED_A first).
na = numel(sorted_a);
[~, ord] = sort([sorted_a(:); q(:)]);
from_a = ord <= na;
c = cumsum(from_a);
n = zeros(size(q));
n(ord(~from_a) - na) = c(~from_a);
end
