classdef Ratio < scistack.BaseVariable
end
