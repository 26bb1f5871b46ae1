function x = npy_arrange(flat, shape, fortran)
%NPY_ARRANGE C-order (or Fortran-order) flat npy data -> the MATLAB array with numpy's
%   indexing: X(i, j, k) is numpy's [i-1, j-1, k-1]; () -> 1x1, (n,) -> n x 1.
nd = numel(shape);
if nd == 0
    x = reshape(flat, 1, 1);
elseif nd == 1
    x = reshape(flat, shape(1), 1);
elseif fortran
    x = reshape(flat, shape);
else
    x = permute(reshape(flat, fliplr(shape)), nd:-1:1);
end
end
